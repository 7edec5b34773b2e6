"""Model builders, stems and ImageNet weight handling (with test-made weight files)."""

import hashlib
import socket
import urllib.error
import urllib.request

import pytest
import torch

from common.config import make_config
from common.errors import ConfigError, WeightsError
from common.models import MODELS, build_model, hub_dir, locate_weights, weights_file
from tests.conftest import write_test_weights


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_models_return_ten_logits(name, stem):
    with torch.device("meta"):  # shapes only: ResNet-152 at full size would cost seconds here
        model = build_model(name, stem=stem).eval()
        assert model(torch.empty(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_stem_keeps_resolution_and_unknown_names_are_refused():
    model = build_model("resnet18", stem="cifar")
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert build_model("resnet18", stem="imagenet").conv1.stride == (2, 2)
    with pytest.raises(ConfigError, match="unknown model 'vgg16'"):
        build_model("vgg16")


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
    with pytest.raises(ConfigError, match="is not V1/V2 nor a file"):
        label("resnet50", weights="V3")
    other = tmp_path / "b" / "keras.pth"  # another file of the same name: another label
    other.parent.mkdir()
    other.write_bytes(b"y")
    assert label("resnet50", weights=str(other))[0] not in (mine, None)


def test_pretrained_loads_from_the_cache_or_a_weights_dir_and_replaces_head(torch_home, tmp_path):
    path = write_test_weights("resnet18", torch_home / "hub" / "checkpoints")
    assert locate_weights("resnet18", None, False, "V1") == (path, "")
    model = build_model("resnet18", pretrained=True)
    saved = torch.load(path)
    assert torch.equal(model.layer1[0].conv1.weight, saved["layer1.0.conv1.weight"])
    assert model.fc.out_features == 10 and model.conv1.stride == (2, 2)
    own = write_test_weights("resnet18", tmp_path / "w")
    assert locate_weights("resnet18", tmp_path / "w", False, "V1") == (own, "")


def test_missing_weights_fail_in_one_line_with_folders_reason_and_remedy(torch_home, monkeypatch):
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as e:
        build_model("resnet50", pretrained=True, weights_path=None)
    message = str(e.value)
    assert "\n" not in message and f"resnet50 are not in {hub_dir()}, and" in message
    reason = "the download failed (URLError: [Errno -3] Temporary failure in name resolution)"
    assert f"{reason}. Remedy: download torchvision's resnet50-0676ba61.pth" in message  # V1
    assert not (torch_home / "hub").exists()  # no folder left that the download made


def test_a_download_that_does_not_match_torchvisions_hash_is_refused(
    torch_home, tmp_path, monkeypatch
):
    fake = tmp_path / "served.pth"
    fake.write_bytes(b"not the weights torchvision published")
    monkeypatch.setattr(torch.hub, "urlopen", lambda request: urllib.request.urlopen(fake.as_uri()))
    with pytest.raises(WeightsError, match="invalid hash value .expected .f37072fd") as e:
        build_model("resnet18", pretrained=True)
    assert "\n" not in str(e.value)
    assert not (hub_dir() / weights_file("resnet18")).exists()  # the wrong file is not kept


def test_a_float16_state_dict_without_the_head_loads_and_others_are_refused(tmp_path):
    torch.manual_seed(0)
    full = MODELS["resnet50"](weights=None).state_dict()
    backbone = {k: v.half() for k, v in full.items() if v.is_floating_point() and "fc." not in k}
    backbone.update({k: v for k, v in full.items() if not v.is_floating_point()})
    torch.save(backbone, tmp_path / "compact.pth")
    model = build_model("resnet50", pretrained=True, weights_path=tmp_path / "compact.pth")
    assert model.fc.out_features == 10 and model.layer4[2].conv3.weight.dtype == torch.float32
    assert torch.equal(model.layer4[2].conv3.weight, backbone["layer4.2.conv3.weight"].float())
    assert torch.equal(model.bn1.running_var, backbone["bn1.running_var"].float())
    for name, broken, message in (
        ("Missing", {k: v for k, v in backbone.items() if k != "layer1.0.conv1.weight"}, ""),
        ("Unexpected", dict(backbone, **{"head.weight": torch.zeros(1)}), ""),
        ("resnet18", MODELS["resnet18"](weights=None).state_dict(), "does not fit resnet50"),
        ("junk", b"not a checkpoint", "cannot read weights file"),
    ):
        path = tmp_path / f"{name}.pth"
        if isinstance(broken, bytes):
            path.write_bytes(broken)
        else:
            torch.save(broken, path)
        with pytest.raises(WeightsError, match=message or f"does not fit resnet50 .{name} key"):
            build_model("resnet50", pretrained=True, weights_path=path)
