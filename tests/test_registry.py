import pytest

from fcnseg import FcnsegError, build_model, list_models


def test_unknown_model_suggests_the_nearest_and_lists_all():
    with pytest.raises(FcnsegError, match=r"unknown model 'unte'\. Did you mean 'unet'\?"):
        build_model("unte", num_classes=2)
    with pytest.raises(FcnsegError, match="Choices: " + ", ".join(list_models())):
        build_model("nothing-like-it", num_classes=2)


def test_unknown_model_option_lists_the_options():
    with pytest.raises(FcnsegError, match=r"no option 'base_widht'.*'base_width'"):
        build_model("unet", num_classes=2, base_widht=8)
