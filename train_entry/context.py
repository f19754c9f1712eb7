"""What every method needs: config, resolved paths, world, precision, callbacks, and the shared
TrainingArguments fields (each method adds its own on top, like TRL's one config per trainer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .callbacks import CheckpointPolicyCallback, ProgressCallback
from .checkpoints import agreed_checkpoint
from .config import RunConfig
from .events import log
from .layout import Layout
from .runtime import World
from .sharding import ShardReport, check_world, decoder_layer_classes, describe_fsdp, fsdp_arguments


@dataclass
class TrainContext:
    cfg: RunConfig
    layout: Layout
    world: World
    precision: str
    policy: CheckpointPolicyCallback = field(default_factory=CheckpointPolicyCallback)
    resumed_from: Optional[str] = None  # the checkpoint training resumed from (named if it cannot be read)

    @property
    def callbacks(self) -> list:
        progress = ProgressCallback(self.layout.output_dir / "train_log.jsonl", self.cfg.stage, self.cfg.method)
        return [progress, self.policy] + ([ShardReport()] if self.cfg.distributed.sharded else [])

    def resume_checkpoint(self) -> str | None:
        """The newest complete checkpoint, the same on every rank."""
        ckpt = agreed_checkpoint(self.layout.checkpoint_dir)
        return str(ckpt) if ckpt else None

    def training_args(self) -> dict[str, Any]:
        """Keyword arguments shared by every TRL/transformers config class."""
        t = self.cfg.training
        report_to = []
        if self.cfg.tracking.tensorboard:
            report_to.append("tensorboard")
        if self.cfg.tracking.mlflow:
            report_to.append("mlflow")
        has_eval = self.layout.validation is not None
        args: dict[str, Any] = dict(
            output_dir=str(self.layout.checkpoint_dir),
            num_train_epochs=t.epochs,
            max_steps=t.max_steps,
            learning_rate=t.learning_rate,
            lr_scheduler_type=t.lr_scheduler,
            warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
            weight_decay=t.weight_decay,
            per_device_train_batch_size=t.per_device_batch_size,
            per_device_eval_batch_size=t.per_device_batch_size,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            gradient_checkpointing=t.gradient_checkpointing,
            bf16=self.precision == "bf16",
            fp16=self.precision == "fp16",
            optim=t.optimizer,
            seed=t.seed,
            data_seed=t.seed,
            logging_steps=t.logging_steps,
            save_strategy="steps",
            # 0 → a fraction of the run (transformers reads values < 1 as a ratio of total steps)
            save_steps=t.save_steps or 0.1,
            save_total_limit=t.save_total_limit,
            eval_strategy=("steps" if t.eval_steps else "no") if has_eval else "no",
            eval_steps=t.eval_steps or None,
            report_to=report_to,
            disable_tqdm=True,
            remove_unused_columns=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=self.precision != "fp32",
            ddp_find_unused_parameters=False if self.world.distributed else None,
        )
        if self.world.distributed and self.precision == "fp32":
            import torch

            if not torch.cuda.is_available():
                # CPU data parallel: accelerate only wraps the model in DDP when told it runs on the CPU
                args.update(ddp_backend="gloo", use_cpu=True)
        if self.cfg.distributed.sharded:
            check_world(self.cfg, self.world.world_size)
            args.update(fsdp_arguments(self.cfg, self.world.world_size, decoder_layer_classes(self.model_source)))
            if self.world.is_main:
                log(describe_fsdp(args["fsdp_config"], self.cfg, self.world.world_size))
        elif t.gradient_checkpointing:
            args["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
        return args

    @staticmethod
    def quiet(trainer):
        """Drop the trainer's own stdout printer: our ProgressCallback reports instead."""
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        return trainer

    @property
    def model_source(self) -> str:
        """Where this stage's weights start: an earlier full fine-tuning stage's output, else the base model."""
        return str(self.layout.init_model) if self.layout.init_model is not None else self.cfg.base_model

    @property
    def model_label(self) -> str:
        """What `model_source` is, for messages."""
        return "base model" if self.layout.init_model is None else "earlier stage's weights"

    @property
    def tokenizer_source(self) -> str:
        """Where the tokenizer comes from: the previous stage's output if it saved one, else the base model."""
        for init in (self.layout.init_adapter, self.layout.init_model):
            if init is not None and (Path(init) / "tokenizer_config.json").is_file():
                return str(init)
        return self.cfg.base_model
