"""Model builders, stems and ImageNet weight handling (with test-made weight files)."""

import hashlib
import os
import socket
import urllib.error

import pytest
import torch

from common.config import make_config
from common.errors import ConfigError, WeightsError
from common.models import MODELS, build_model, ensure_weights, find_weights, weights_file
from tests.conftest import write_test_weights


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_models_return_ten_logits(name, stem):
    with torch.device("meta"):  # shapes only: ResNet-152 at full size would cost seconds here
        model = build_model(name, stem=stem).eval()
        assert model(torch.empty(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_stem_keeps_resolution():
    model = build_model("resnet18", stem="cifar")
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert build_model("resnet18", stem="imagenet").conv1.stride == (2, 2)


def test_weights_file_names_are_torchvisions_for_each_version():
    assert weights_file("resnet18") == "resnet18-f37072fd.pth"
    assert weights_file("resnet50") == "resnet50-0676ba61.pth"  # V1, the default
    assert weights_file("resnet50", version="V2") == "resnet50-11ad3fa6.pth"
    assert weights_file("resnext50_32x4d") == "resnext50_32x4d-7cdf4587.pth"
    assert weights_file("resnext50_32x4d", version="V2") == "resnext50_32x4d-1a0047aa.pth"
    assert weights_file("resnet18", version="V2") == "resnet18-f37072fd.pth"  # V1: no V2


def test_the_weights_setting_labels_every_kind_of_weights(tmp_path):
    def label(model: str, **kw: object) -> tuple[str | None, str | None]:
        cfg = make_config(model, 1.0, pretrained=True, profile="quick", **kw)
        return cfg.weights, cfg.weights_path

    assert label("resnet50") == ("V1", None)
    assert label("resnet50", weights="V2") == ("V2", None)
    assert label("resnet18", weights="V2") == ("V1", None)  # ResNet-18 stays V1, labelled so
    own = tmp_path / "keras.pth"
    own.write_bytes(b"x")
    mine = f"custom: keras.pth (sha256 {hashlib.sha256(b'x').hexdigest()[:8]})"
    assert label("resnet50", weights=str(own)) == (mine, str(own))
    # a file that is not torchvision's for the version is one's own, whatever the option
    assert label("resnet50", weights_path=str(own))[0] == mine
    named = tmp_path / weights_file("resnet50")
    assert label("resnet50", weights_path=str(named)) == ("V1", str(named))
    assert (
        make_config("resnet50", 1.0, pretrained=False, profile="quick", weights="V2").weights
        is None
    )
    with pytest.raises(ConfigError, match="neither V1 nor V2 nor a file"):
        label("resnet50", weights="V3")


def test_pretrained_loads_from_torchvision_cache_and_replaces_head(torch_home):
    path = write_test_weights("resnet18", torch_home / "hub" / "checkpoints")
    assert find_weights("resnet18") == path
    model = build_model("resnet18", pretrained=True)
    saved = torch.load(path)
    assert torch.equal(model.layer1[0].conv1.weight, saved["layer1.0.conv1.weight"])
    assert model.fc.out_features == 10 and model.conv1.stride == (2, 2)


def test_pretrained_from_weights_dir_and_weights_path(torch_home, tmp_path):
    path = write_test_weights("resnet18", tmp_path / "w")
    assert ensure_weights("resnet18", tmp_path / "w", download=False) == path
    assert build_model("resnet18", pretrained=True, weights_path=path).fc.out_features == 10


def test_missing_weights_offline_fail_with_the_remedy(torch_home, no_network):
    with pytest.raises(WeightsError) as e:
        build_model("resnet50", pretrained=True)
    message = str(e.value)
    assert "\n" not in message and "resnet50-0676ba61.pth" in message  # V1, the default
    assert str(torch_home / "hub" / "checkpoints") in message and "download failed" in message


def test_the_missing_weights_message_gives_the_downloads_reason(torch_home, monkeypatch):
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as e:
        ensure_weights("resnet50")
    message = str(e.value)
    assert "\n" not in message
    reason = "the download failed (URLError: [Errno -3] Temporary failure in name resolution)"
    assert f"{reason}; download https://download.pytorch.org/models/resnet50-" in message


def test_two_different_files_of_one_name_get_different_labels(tmp_path):
    def label(path: object) -> str:
        cfg = make_config("resnet50", 1.0, pretrained=True, profile="quick", weights=str(path))
        return cfg.weights

    one, other, copy = tmp_path / "a" / "w.pth", tmp_path / "b" / "w.pth", tmp_path / "c" / "w.pth"
    for path, content in ((one, b"one"), (other, b"two"), (copy, b"one")):
        path.parent.mkdir()
        path.write_bytes(content)
    assert label(one) != label(other) and label(one).startswith("custom: w.pth (sha256 ")
    assert label(one) == label(copy)  # the same weights under one name: one row
    # the hash is computed once per (path, size, mtime): a rewrite that keeps both is not seen,
    # one that changes the mtime is
    stat = one.stat()
    one.write_bytes(b"two")
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert label(one) == label(copy)
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert label(one) == label(other)


def test_a_float16_state_dict_without_the_head_loads_as_ones_own(tmp_path):
    torch.manual_seed(0)
    full = MODELS["resnet50"](weights=None).state_dict()
    backbone = {k: v.half() for k, v in full.items() if v.is_floating_point() and "fc." not in k}
    backbone.update({k: v for k, v in full.items() if not v.is_floating_point()})
    torch.save(backbone, tmp_path / "compact.pth")
    model = build_model("resnet50", pretrained=True, weights_path=tmp_path / "compact.pth")
    assert model.fc.out_features == 10 and model.layer4[2].conv3.weight.dtype == torch.float32
    assert torch.equal(model.layer4[2].conv3.weight, backbone["layer4.2.conv3.weight"].float())
    assert torch.equal(model.bn1.running_var, backbone["bn1.running_var"].float())
    # any other key missing or extra is still refused, in one line
    for name, broken in (
        ("missing", {k: v for k, v in backbone.items() if k != "layer1.0.conv1.weight"}),
        ("unexpected", dict(backbone, **{"head.weight": torch.zeros(1)})),
    ):
        torch.save(broken, tmp_path / f"{name}.pth")
        with pytest.raises(WeightsError, match=f"does not fit resnet50 \\({name} key") as e:
            build_model("resnet50", pretrained=True, weights_path=tmp_path / f"{name}.pth")
        assert "\n" not in str(e.value)


def test_weights_that_do_not_fit_are_rejected(torch_home, tmp_path):
    wrong = write_test_weights("resnet18", tmp_path)  # ResNet-18 weights for a ResNet-50
    with pytest.raises(WeightsError, match="does not fit resnet50"):
        build_model("resnet50", pretrained=True, weights_path=wrong)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        build_model("resnet18", pretrained=True, weights_path=junk)


def test_unknown_model_and_stem():
    with pytest.raises(ConfigError, match="unknown model 'vgg16'"):
        build_model("vgg16")
    with pytest.raises(ConfigError, match="unknown stem"):
        build_model("resnet18", stem="tiny")
