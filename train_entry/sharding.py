"""Sharded training (`distributed.strategy: fsdp`): PyTorch FSDP2 driven by accelerate through the trainer.

What train_entry sets (`fsdp_arguments`, read by transformers' TrainingArguments into accelerate's
FullyShardedDataParallelPlugin):
- FSDP2 (`fully_shard`; `fsdp_config.version: 2`, the default of transformers 5), one FSDP unit per decoder
  layer: the wrap policy names the model's decoder-layer classes (`_no_split_modules`, e.g. LlamaDecoderLayer);
  accelerate adds one unit for the input embeddings and one for the final norm + output head.
- Activation checkpointing by FSDP itself (`fsdp_config.activation_checkpointing`, non-reentrant
  checkpoint_wrapper around each decoder layer) instead of the trainer's gradient checkpointing, which would
  all-gather every layer once more in the backward (transformers refuses both at once).
- PEFT adapters are sharded with their decoder layer (FSDP2 mixes frozen and trainable parameters in one unit).
- QLoRA: 4-bit weights stored in the compute dtype (`bnb_4bit_quant_storage`, train_entry.modeling) so FSDP can
  shard them like every other float parameter.
- `distributed.sharding: hybrid_shard`: a 2-D device mesh (accelerate ParallelismConfig: replicate across nodes,
  shard within a node); `cpu_offload`: FSDP2's CPUOffloadPolicy; `checkpoints`: SHARDED_STATE_DICT (DCP, one
  file per rank) or FULL_STATE_DICT (gathered on rank 0).
- Final weights: always gathered on rank 0 (full state dict, CPU) and written by rank 0 as the usual
  from_pretrained folder (the adapter with PEFT), full weights in the run's precision like an unsharded run.

CPU (gloo): accelerate 1.15 enables FSDP only for GPU-like distributed types (accelerate/state.py,
AcceleratorState.__init__: the FSDP branch lists MULTI_GPU, MULTI_XPU, ... but not MULTI_CPU) and silently drops
the plugin on a CPU world, which would train data parallel while the plan says sharded. PyTorch's FSDP2 runs on
CPU tensors with gloo, so `cpu_trainer` switches the accelerator to FSDP after it is created; everything else
(wrapping, sharded checkpoints, loading, gathering) is accelerate's own code. `hybrid_shard` cannot run on CPUs:
accelerate checks its device mesh against the distributed type while the Accelerator is built (see `hybrid_mesh`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .config import RunConfig
from .events import emit, log


class ShardingError(ValueError):
    """A sharded run that cannot be set up as configured (a config error, exit 2): the cause and the fix."""

    def __init__(self, cause: str, fix: str):
        super().__init__(cause)
        self.cause, self.fix = cause, fix


#: Why prompt-learning methods are not sharded (the spec refuses them with fsdp; the planner does not choose it).
PROMPT_LEARNING_UNSHARDED = ("prompt-learning methods (prefix, prompt, p_tuning) cannot be sharded: their "
                             "virtual-token encoder sits outside the decoder layers FSDP wraps (PyTorch: "
                             "'aten.embedding.default got mixed torch.Tensor and DTensor')")


def check_world(cfg: RunConfig, world_size: int) -> None:
    """FSDP needs several processes and a method it can shard; a run config that says fsdp started as one process
    is a launch mistake."""
    if cfg.peft.is_prompt_learning:
        raise ShardingError(PROMPT_LEARNING_UNSHARDED, "they train few parameters: set distributed.strategy: ddp")
    if world_size < 2:
        raise ShardingError("the run config says distributed.strategy: fsdp but this is a single process "
                            "(WORLD_SIZE 1)",
                            f"launch it with torchrun --nproc_per_node {max(cfg.distributed.nproc_per_node, 2)} "
                            "(cloudft submit does), or set distributed.strategy: ddp")


def decoder_layer_classes(source: str) -> list[str]:
    """The decoder-layer class names of the model in `source` (its `_no_split_modules`), read from its config
    without loading weights: FSDP wraps each of them as one unit."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    config = AutoConfig.from_pretrained(source)
    try:
        model_cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        raise ShardingError(f"{type(config).__name__} is not a causal language model transformers knows, so its "
                            "decoder layers cannot be found to shard", "set distributed.strategy: ddp") from None
    classes = list(getattr(model_cls, "_no_split_modules", None) or [])
    if not classes:
        raise ShardingError(f"{model_cls.__name__} names no decoder-layer class (_no_split_modules), so FSDP would "
                            "gather the whole model at once", "set distributed.strategy: ddp")
    return classes


def fsdp_arguments(cfg: RunConfig, world_size: int, layer_classes: list[str]) -> dict[str, Any]:
    """TrainingArguments fields of a sharded run (see the module docstring)."""
    d = cfg.distributed
    fsdp_config: dict[str, Any] = {
        "version": 2,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": layer_classes,
        "reshard_after_forward": True,
        "cpu_offload": d.cpu_offload,
        "state_dict_type": "SHARDED_STATE_DICT" if d.checkpoints == "sharded" else "FULL_STATE_DICT",
        "activation_checkpointing": cfg.training.gradient_checkpointing,
    }
    args: dict[str, Any] = {"fsdp": True, "fsdp_config": fsdp_config, "gradient_checkpointing": False}
    if d.sharding == "hybrid_shard":
        args["parallelism_config"] = hybrid_mesh(world_size, d.nproc_per_node)
    return args


def describe_fsdp(fsdp_config: dict[str, Any], cfg: RunConfig, world_size: int) -> str:
    """One log line: how this run is sharded."""
    d = cfg.distributed
    scope = (f"hybrid: sharded over {d.nproc_per_node} per node, replicated over {world_size // d.nproc_per_node} "
             "nodes" if d.sharding == "hybrid_shard" else f"full_shard over {world_size} processes")
    return (f"fsdp: FSDP{fsdp_config['version']} {scope}; one unit per "
            f"{', '.join(fsdp_config['transformer_layer_cls_to_wrap'])}; activation checkpointing "
            f"{'on' if fsdp_config['activation_checkpointing'] else 'off'}; cpu offload "
            f"{'on' if fsdp_config['cpu_offload'] else 'off'}; checkpoints {d.checkpoints}")


def hybrid_mesh(world_size: int, per_node: int):
    """accelerate's 2-D mesh for HSDP: `per_node` shards within a node, replicated over the nodes."""
    import torch
    from accelerate import ParallelismConfig

    if not torch.cuda.is_available():
        raise ShardingError("hybrid_shard on CPUs: accelerate refuses a device mesh there (Accelerator: "
                            "'ParallelismConfig is only compatible DistributedType.FSDP (version 2) or "
                            "DistributedType.Multi{Device} or DistributedType.DEEPSPEED, but got "
                            "DistributedType.MULTI_CPU')", "set distributed.sharding: full_shard, or run on GPUs")
    if per_node < 2 or world_size % per_node or world_size // per_node < 2:
        raise ShardingError(f"hybrid_shard needs at least 2 nodes of at least 2 processes each; this run has "
                            f"{world_size} processes, {per_node} per node", "set distributed.sharding: full_shard")
    return ParallelismConfig(dp_replicate_size=world_size // per_node, dp_shard_size=per_node)


class CpuFsdp:
    """Trainer mixin: FSDP on a CPU world (see the module docstring for why accelerate needs this)."""

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        from accelerate.state import PartialState
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        state = self.accelerator.state
        if self.args.fsdp_plugin_args is None or state.distributed_type != DistributedType.MULTI_CPU:
            return
        plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
        if self.accelerator.mixed_precision != "no":
            plugin.set_mixed_precision(self.accelerator.mixed_precision)
        state.distributed_type = DistributedType.FSDP
        # as AcceleratorState.__init__ does when it turns FSDP on: a later AcceleratorState() copies it from here
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        state.fsdp_plugin = plugin
        self.is_fsdp_enabled = True


def shard_summary(model) -> dict[str, Any]:
    """What this rank holds of the model's parameters (an FSDP2 parameter is a DTensor: its local shard), and
    whether the 4-bit linears (QLoRA) are sharded and in which storage dtype."""
    held = total = 0
    for p in model.parameters():
        local = getattr(p, "_local_tensor", p)
        held += local.numel() * local.element_size()
        total += p.numel() * p.element_size()
    four_bit = [m.weight for m in model.modules()  # bitsandbytes' own (PEFT's LoRA wrapper has the same name)
                if type(m).__name__ == "Linear4bit" and type(m).__module__.startswith("bitsandbytes")]
    return {"held_mib": round(held / 2**20, 4), "total_mib": round(total / 2**20, 4),
            "linear4bit": len(four_bit), "linear4bit_sharded": sum(hasattr(w, "_local_tensor") for w in four_bit),
            "linear4bit_storage": str(four_bit[0].dtype).replace("torch.", "") if four_bit else None}


class ShardReport(TrainerCallback):
    """Each rank reports what it holds once training starts (the `shards` event in its log)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            emit("shards", rank=args.process_index, **shard_summary(model))


def cpu_trainer(trainer_cls: type) -> type:
    """`trainer_cls` that shards on a CPU world as well (unchanged where accelerate enables FSDP itself)."""
    return type(trainer_cls.__name__, (CpuFsdp, trainer_cls), {})


def unwrap_activation_checkpointing(model) -> None:
    """Take FSDP's activation-checkpoint wrappers out of the module tree (training is over). They add
    `_checkpoint_wrapped_module` to module names, which the state dict hides but PEFT's adapter selection
    (tuners_utils._get_tuner_state_dict_key_prefixes, from named_modules) does not: it would save no adapter
    weights at all."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, CheckpointWrapper):
                setattr(parent, name, child._checkpoint_wrapped_module)


def save_final(trainer, out: Path, precision: str, full_weights: bool) -> None:
    """The final weights of a sharded run: gathered on rank 0 (every rank takes part) and saved by it; full
    weights are cast back to the run's precision (FSDP trains fp32 master copies of 16-bit weights)."""
    from .runtime import torch_dtype

    unwrap_activation_checkpointing(trainer.model)
    state = trainer.accelerator.get_state_dict(trainer.model)  # collective: full state dict on rank 0, on the CPU
    if not trainer.args.should_save:
        return
    if full_weights:
        dtype = torch_dtype(precision)
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    trainer._save(str(out), state_dict=state)
    log(f"final weights gathered from {trainer.args.world_size} shards and saved to {out}")
