"""The torch backend: Hugging Face transformers with a batched KV cache."""
