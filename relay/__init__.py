"""The relay: holds a MongoDB change stream and forwards every change to EventBridge, at least once.

Entry points: `python -m relay run|check|status|health` (relay/cli.py) and, in-process,
`relay.service.Relay(settings).run()`.
"""
