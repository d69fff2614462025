"""WiSE-FT interpolation of the trained weights (distill.weights.interpolate)."""

import pytest
import torch

from distill.recipe import load_recipe
from distill.weights import interpolate
from synthgen.errors import UserError


def test_full_weights_move_to_the_point_on_the_line():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    interpolate(model, initial, 0.25)
    for n, p in model.named_parameters():
        assert torch.allclose(p, initial[n] + 0.25 * (trained[n] - initial[n]))


def test_lora_scales_only_the_b_matrices_so_the_update_scales_exactly():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(2, 4)), torch.nn.Parameter(torch.zeros(3, 2))
    module = torch.nn.Module()
    module.register_parameter("lora_A", a)
    module.register_parameter("lora_B", b)
    initial = {n: p.detach().clone() for n, p in module.named_parameters()}
    with torch.no_grad():
        a.add_(torch.randn_like(a))
        b.add_(torch.randn_like(b))
    update = (b @ a).detach().clone()
    interpolate(module, initial, 0.5)
    assert torch.allclose(b @ a, 0.5 * update, atol=1e-6)


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_interpolation_out_of_range_is_a_user_error(value):
    with pytest.raises(UserError, match="train.interpolation"):
        load_recipe(None, [f"train.interpolation={value}"], check_files=False)


def test_a_folder_that_cannot_be_removed_is_an_error_not_ignored(tmp_path):
    # checkpoints and train_state were removed with ignore_errors=True: a half-removed one passed silently
    from synthgen.errors import UserError
    from synthgen.rundir import remove_tree

    remove_tree(tmp_path / "missing")  # nothing there: nothing to do
    folder = tmp_path / "ckpt"
    (folder / "inner").mkdir(parents=True)
    remove_tree(folder)
    assert not folder.exists()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(UserError, match=f"cannot remove {not_a_folder}"):
        remove_tree(not_a_folder)
