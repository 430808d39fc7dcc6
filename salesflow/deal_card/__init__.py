"""The deal card's tab in Bitrix24 (issue 12, R-X10): people act on a deal from the portal."""
