"""Bare handlers: the least a Lambda function can do for the same effect, as the baseline the
project's functions are measured against. Benchmark code only; never deployed.
"""
