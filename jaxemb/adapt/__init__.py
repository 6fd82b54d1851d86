"""Adapting trained encoders: tokenizer transfer, model merging."""
