"""Test support of the model cache: a fake Hugging Face Hub (`fakehub`)."""
