"""The llama.cpp backend: the GGUF file itself, run by llama.cpp."""
