"""PromptMM-style distillation of a multimodal teacher into ID towers, and serving them.

    teacher.py     frozen store vectors + soft prompts (prompt.py) + graph propagation, BPR
    students.py    the `Distillation` wrapper (KD losses) around a recsys registry student
    losses/        bpr, pairwise_kd, listwise_kd, embedding_kd (tensors in, scalar or parts out)
    trainer.py     teacher -> student -> new-item mapping, selected on validation only
    mapping.py     MLLM vectors -> student item vectors for items without training interactions
    run.py         `mllmrec distill`: store + log + split -> run directory (artifact.py)
    recommend.py   `Recommender` and `mllmrec recommend`: faiss top-k over the student's tables

Modules import torch/faiss; import them directly (this package file stays light).
"""
