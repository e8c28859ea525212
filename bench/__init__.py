"""Benchmarks: the relay against a raw change-stream read and a naive relay, and the Lambda
functions against bare boto3 handlers, each ratio measured in the same run as its baseline.

Never imported by product code, and never run by `make test`: speed is measured here only.
"""
