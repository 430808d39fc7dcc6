"""salesflow: the «Продажа» pipeline of Bitrix24 with 1C, as durable Temporal workflows.

The rooms are subpackages: `workflows`, `activities`, `integrations`, `relay`, `store`,
`starter`, `config`, and `worker` (the Worker's composition).
"""
