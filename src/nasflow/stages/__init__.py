"""The pipeline's stages: prepare -> search -> retrain -> evaluate, one function each."""
