"""Stage 2, train: LoRA-tune a backbone contrastively on co-interaction pairs (NoteLLM-2).

    trainer.py     run_train(cfg) -> manifest (`main` is the CLI wrapper); Trainer: one step, validation
    data.py        pairs folder -> batches (pairs are mined by mllmrec.catalog.pairs)
    step.py        one forward/backward over a batch (GradCache, cross-device negatives)
    lora.py        attaching peft LoRA per the backbone family's targets; saving adapters
    losses/        in-batch InfoNCE and its registry (names in YAML/CLI, objects from Python)
    checkpoint.py  resumable checkpoints (weights, optimizer, scheduler, history)
    validate.py    item-to-item recall on held-out pairs
    merge.py       `mllmrec merge`: adapter merged into the base model
    config.py      TrainConfig, MergeConfig

Applying a finished run to an encoder lives beside the backbone (backbone/trained_run.py), so
embedding with a tuned model never imports this package.
"""
