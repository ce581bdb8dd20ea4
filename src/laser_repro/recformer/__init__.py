"""RECFORMER (Li et al., KDD'23): a Longformer over key-value item text, ID-free; Table 2 and Figure 3."""
