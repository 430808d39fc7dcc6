"""The test rig: a Bitrix24 portal, a 1C base, an SMTP sink and the local stack.

Not installed with the product; imported from the checkout by tests, benches and
`salesflow dev` / `salesflow emulate`.
"""
