"""LlamaRec (Yue et al., 2023): LRURec retrieval, then an LLM ranker with LoRA over the top 20."""
