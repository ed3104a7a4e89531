"""The fleet (DESIGN "Fleet"): node agent, scheduler and the surface the API calls, over etcd.

Nothing here imports the etcd client at module level: the daemon imports it only when `[fleet]`
is configured.
"""
