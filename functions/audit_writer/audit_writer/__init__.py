"""The audit trail: who changed which MongoDB document, what changed, and when.

`writer.audit_change` turns one decoded change event into at most one record in a store
(`stores`); `history` reads a document's records back. Nothing here knows about Lambda.
"""
