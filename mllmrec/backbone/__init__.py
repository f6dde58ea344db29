"""Backbones: the Encoder protocol and its implementations (HF Qwen-VL, composed MLLM, vLLM)."""
