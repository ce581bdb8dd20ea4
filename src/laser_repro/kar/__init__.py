"""KAR (Xi et al., 2023): LLM knowledge, encoded, fused into a sequential recommender by hybrid experts."""
