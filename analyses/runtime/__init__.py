"""Where and how specs run: model references and loading (`models`, `llama2c`), the one
`execute()` every worker backend calls, the workers (`jobs`, `local_worker`, `ray_worker`,
`workers`), the DuckDB store and `compute()` (`service`).

Importing `service` or `store` imports no torch; loading a model does.
"""
