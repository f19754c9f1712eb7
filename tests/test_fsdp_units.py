"""The pieces of sharded training that need no second process: the TrainingArguments train_entry derives from the
run config (checked by transformers' own parsing into accelerate's FSDP plugin), the QLoRA storage dtype, the hybrid
mesh, config errors, and checkpoint completion markers of several nodes."""

from __future__ import annotations

import json

import pytest

from train_entry.checkpoints import MARKER, agreed_checkpoint, is_complete, mark_complete, node_marker
from train_entry.config import DataConfig, DistributedConfig, PeftConfig, RunConfig, TrainingConfig
from train_entry.sharding import ShardingError, check_world, decoder_layer_classes, fsdp_arguments, hybrid_mesh


def _cfg(model, **dist) -> RunConfig:
    return RunConfig(name="u", base_model=str(model), data=DataConfig(train="t.jsonl"),
                     training=TrainingConfig(gradient_checkpointing=True),
                     distributed=DistributedConfig(**{"strategy": "fsdp", "nproc_per_node": 2, **dist}))


def test_fsdp_arguments_become_accelerates_fsdp2_plugin(tmp_path, tiny_model):
    from transformers import TrainingArguments

    layers = decoder_layer_classes(str(tiny_model))
    assert layers == ["LlamaDecoderLayer"]  # the wrap policy: the model's decoder-layer class
    args = fsdp_arguments(_cfg(tiny_model, cpu_offload=True), 2, layers)
    assert args["gradient_checkpointing"] is False  # FSDP checkpoints activations itself
    plugin = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **args).fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plugin["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert plugin["activation_checkpointing"] is True and plugin["cpu_offload"] is True
    assert plugin["state_dict_type"] == "SHARDED_STATE_DICT" and plugin["reshard_after_forward"] is True
    full = fsdp_arguments(_cfg(tiny_model, checkpoints="full"), 2, layers)
    assert TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **full).fsdp_plugin_args[
        "state_dict_type"] == "FULL_STATE_DICT"


def test_hybrid_shard_is_a_two_dimensional_mesh_on_gpus(tiny_model, monkeypatch):
    import torch

    hybrid = _cfg(tiny_model, sharding="hybrid_shard", nnodes=2, nproc_per_node=4)
    if not torch.cuda.is_available():  # accelerate refuses a mesh on a CPU world: said before training starts
        with pytest.raises(ShardingError, match="hybrid_shard on CPUs") as err:
            fsdp_arguments(hybrid, 8, ["LlamaDecoderLayer"])
        assert err.value.fix.startswith("set distributed.sharding: full_shard")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the mesh a GPU run gets
    pc = fsdp_arguments(hybrid, 8, ["LlamaDecoderLayer"])["parallelism_config"]
    assert (pc.dp_replicate_size, pc.dp_shard_size) == (2, 4)  # replicate across nodes, shard within one
    for world, per_node in ((4, 4), (4, 1), (6, 4)):
        with pytest.raises(ShardingError, match="hybrid_shard needs at least 2 nodes"):
            hybrid_mesh(world, per_node)


def test_sharded_qlora_stores_4bit_weights_in_the_compute_dtype():
    import torch

    from train_entry.modeling import quantization_config

    peft = PeftConfig(type="qlora", quantization={"compute_dtype": "bfloat16"})
    sharded = quantization_config(peft, "bf16", sharded=True)
    assert sharded.bnb_4bit_quant_storage == torch.bfloat16 == sharded.bnb_4bit_compute_dtype
    assert quantization_config(peft, "bf16").bnb_4bit_quant_storage == torch.uint8  # unsharded: bitsandbytes' own
    with pytest.raises(ShardingError, match="8-bit QLoRA weights cannot be sharded"):
        quantization_config(PeftConfig(type="qlora", quantization={"bits": 8}), "bf16", sharded=True)


def test_a_run_config_that_cannot_shard_is_refused_before_training(tiny_model):
    cfg = _cfg(tiny_model)
    check_world(cfg, 2)
    with pytest.raises(ShardingError, match="single process"):
        check_world(cfg, 1)
    with pytest.raises(ShardingError, match="prompt-learning methods .* cannot be sharded"):
        check_world(cfg.model_copy(update={"peft": PeftConfig(type="p_tuning")}), 2)


def test_a_model_without_decoder_layers_to_wrap_is_a_config_error(tmp_path):
    from transformers import AutoConfig

    from train_entry.failures import EXIT_BAD_INPUT, describe

    AutoConfig.for_model("t5").save_pretrained(tmp_path)
    with pytest.raises(ShardingError) as err:
        decoder_layer_classes(str(tmp_path))
    failure = describe(err.value)
    assert failure.exit_code == EXIT_BAD_INPUT and failure.fix == "set distributed.strategy: ddp"


def _checkpoint(root, step: int, files: dict[str, str]):
    ckpt = root / f"checkpoint-{step}"
    for name, text in files.items():
        (ckpt / name).parent.mkdir(parents=True, exist_ok=True)
        (ckpt / name).write_text(text)
    return ckpt


def test_a_checkpoint_of_two_nodes_is_complete_only_with_both_markers(tmp_path):
    """Node-local checkpoint folders (SageMaker syncs each instance's to one S3 prefix): each node marks its files."""
    ckpt = _checkpoint(tmp_path, 4, {"trainer_state.json": "{}", "pytorch_model_fsdp_0/__0_0.distcp": "a"})
    mark_complete(ckpt, node=0, nodes=2)
    assert json.loads((ckpt / MARKER).read_text())["nodes"] == 2
    assert not is_complete(ckpt)  # node 1 has not marked (or its files have not arrived)
    (ckpt / "pytorch_model_fsdp_0" / "__8_0.distcp").write_text("node 1's shard")
    mark_complete(ckpt, node=1, nodes=2)
    assert (ckpt / node_marker(1)).is_file() and is_complete(ckpt)
    (ckpt / "pytorch_model_fsdp_0" / "__8_0.distcp").write_text("truncat")  # a partial sync of node 1's shard
    assert not is_complete(ckpt)
    older = _checkpoint(tmp_path, 2, {"trainer_state.json": "{}"})
    mark_complete(older)
    assert agreed_checkpoint(tmp_path) == older  # without a process group: the newest complete one
