"""LLM4REC (Wang et al., 2024): a GPT-2 with user/item tokens and a graph attention bias, leave-one-out port."""
