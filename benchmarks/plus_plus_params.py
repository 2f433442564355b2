"""Training-only parameters of Contextrast and Contextrast++ on HRNetV2-W48 (issue 34), beside the
follow-up paper's count: 66.24M training parameters with Contextrast, 67.82M with Contextrast++
(+1.58M for the three fusion modules). Cityscapes' 19 classes, as the paper counts.

    python benchmarks/plus_plus_params.py
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contextrast_cli.config import resolve_config  # noqa: E402
from contextrast_cli.contrast.criterion import build_criterion  # noqa: E402
from contextrast_cli.models.registry import build_model  # noqa: E402

PAPER = {"contextrast": 66.24e6, "contextrast++": 67.82e6}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    cfg = resolve_config("cityscapes", overrides=["model.pretrained=false", "model.weights=null"])
    network = build_model(cfg.model, 19)
    out = {"network": count(network)}
    for name, sets in {"contextrast": ["contrast.method=contextrast"],
                       "contextrast++ (2-layer MLP, our reading)": ["contrast.method=contextrast++"],
                       "contextrast++ (1-layer MLP)": ["contrast.method=contextrast++", "contrast.fusion_mlp_layers=1"]}.items():
        loss = build_criterion(resolve_config("cityscapes", overrides=sets).contrast, network.feature_channels, 19)
        fusion = count(loss.fusions) if hasattr(loss, "fusions") else 0
        out[name] = {"heads": count(loss.heads), "fusion_modules": fusion, "training_total": out["network"] + count(loss)}
    out["paper"] = {**PAPER, "fusion_modules": PAPER["contextrast++"] - PAPER["contextrast"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
