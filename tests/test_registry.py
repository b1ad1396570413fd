import pytest

from fcnseg import FcnsegError, build_model, list_models
from fcnseg.config import LossConfig, LossTerm
from fcnseg.losses import build_loss
from fcnseg.registry import check_options


def test_unknown_model_suggests_the_nearest_and_lists_all():
    with pytest.raises(FcnsegError, match=r"unknown model 'unte'\. Did you mean 'unet'\?"):
        build_model("unte", num_classes=2)
    with pytest.raises(FcnsegError, match="Choices: " + ", ".join(list_models())):
        build_model("nothing-like-it", num_classes=2)


def test_unknown_model_option_lists_the_options():
    with pytest.raises(FcnsegError, match=r"no option 'base_widht'.*'base_width'"):
        build_model("unet", num_classes=2, base_widht=8)


def test_check_options_names_the_owner_the_nearest_and_every_option():
    expected = (
        "model 'deeplab' has no option 'separabel'. Did you mean 'separable'? "
        "Its options: backbone, separable, output_stride."
    )
    with pytest.raises(FcnsegError) as raised:
        check_options(
            ["backbone", "separabel"], ["backbone", "separable", "output_stride"], "model 'deeplab'"
        )
    assert str(raised.value) == expected


def test_check_options_suggests_nothing_when_nothing_is_close_and_says_when_there_are_none():
    with pytest.raises(FcnsegError) as raised:
        check_options({"zzz": 1}, ["backbone"], "loss 'x'")
    assert str(raised.value) == "loss 'x' has no option 'zzz'. Its options: backbone."
    with pytest.raises(FcnsegError, match=r"has no option 'depth'\. Its options: none\.$"):
        check_options(["depth"], [], "model 'tiny'")


def test_check_options_accepts_known_options_and_takes_iterables_once():
    check_options([], [], "model 'tiny'")
    # Generators can be read only once: the check must not read `accepted` twice.
    check_options(iter(["a", "b"]), (name for name in ["b", "a"]), "model 'ab'")
    with pytest.raises(FcnsegError, match="Its options: a, b"):
        check_options(iter(["a", "c"]), (name for name in ["a", "b"]), "model 'ab'")


def test_models_and_losses_report_unknown_options_alike():
    with pytest.raises(FcnsegError) as from_model:
        build_model("deeplabv3", num_classes=2, atrous_shortcut=False)
    assert str(from_model.value) == (
        "model 'deeplabv3' has no option 'atrous_shortcut'. Did you mean 'atrous_shortcuts'? "
        "Its options: backbone, output_stride, separable, backbone_weights, atrous_shortcuts, crf."
    )
    terms = LossConfig(terms=[LossTerm(name="dice", options={"smoth": 0.0})])
    with pytest.raises(FcnsegError) as from_loss:
        build_loss(terms, num_classes=2)
    assert str(from_loss.value) == (
        "loss 'dice' has no option 'smoth'. Did you mean 'smooth'? "
        "Its options: ignore_index, smooth, class_weights."
    )
