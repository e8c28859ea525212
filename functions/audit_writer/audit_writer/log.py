"""The logger of the audit writer's logic: a child of the handler's Powertools logger.

Both are named after the same service (`POWERTOOLS_SERVICE_NAME`, else `audit_writer`, as the
shared runtime names it), so these records reach the handler's JSON output with its keys.
"""

from aws_lambda_powertools import Logger

from reaction_runtime.env import env_str

SERVICE = "audit_writer"

logger = Logger(service=env_str("POWERTOOLS_SERVICE_NAME", SERVICE), child=True)
