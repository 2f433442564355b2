"""Contextrast++'s memory bank (contrast/bank.py): FIFO queues of K_M anchors per class, the
class-balanced read, its place in the loss's state_dict, and no host synchronisation."""

import pytest
import torch

from contextrast_cli.contrast.bank import AnchorBank


def one_hot(k: int, dim: int, value: float) -> torch.Tensor:
    """(k, dim) rows all equal to ``value`` (a pushed anchor recognisable by its value)."""
    return torch.full((k, dim), value)


def test_each_class_is_a_fifo_queue_of_k_m_entries():
    bank = AnchorBank(3, size=3, dim=2)
    for step in range(5):  # class 0 every step, class 1 twice, class 2 never
        bank.push(one_hot(3, 2, float(step + 1)), torch.tensor([True, step < 2, False]))
    assert bank.filled.tolist() == [3, 2, 0] and bank.head.tolist() == [2, 2, 0]
    assert bank.entries[0, :, 0].tolist() == [4.0, 5.0, 3.0]  # pushes 3, 4, 5 kept; 1 and 2 replaced in order
    assert bank.entries[1, :, 0].tolist() == [1.0, 2.0, 0.0] and bank.entries[2].abs().sum() == 0


def test_a_balanced_read_takes_k_m_entries_of_every_class_with_any():
    bank = AnchorBank(4, size=4, dim=2)
    for step in range(4):  # class 0 full (4), class 1 two entries, class 2 one, class 3 none
        bank.push(one_hot(4, 2, float(step + 1)), torch.tensor([True, step < 2, step < 1, False]))
    draw = bank.draw(torch.Generator().manual_seed(0))
    assert draw.valid.sum(1).tolist() == [4, 4, 4, 0]  # the same number from every class that has any
    assert sorted(draw.entries[0, :, 0].tolist()) == [1.0, 2.0, 3.0, 4.0]  # a full queue: each entry once
    assert draw.entries[2, :, 0].tolist() == [1.0] * 4  # one entry, drawn four times
    seen = set()
    for seed in range(50):  # two entries, drawn with replacement: both appear
        values = bank.draw(torch.Generator().manual_seed(seed)).entries[1, :, 0].tolist()
        assert set(values) <= {1.0, 2.0}
        seen |= set(values)
    assert seen == {1.0, 2.0}
    unbalanced = AnchorBank(4, size=4, dim=2, balanced=False)
    unbalanced.load_state_dict(bank.state_dict())
    assert unbalanced.draw().valid.sum(1).tolist() == [4, 2, 1, 0]  # each queue as it is


def test_the_bank_is_state_not_a_buffer():
    """Saved and restored with the loss's state_dict (checkpoints), but no buffer (DDP broadcasts
    buffers, and the bank must not travel)."""
    bank = AnchorBank(3, size=2, dim=4)
    bank.push(torch.randn(3, 4), torch.tensor([True, False, True]))
    assert list(dict(bank.named_buffers())) == [] and list(bank.state_dict()) == ["_extra_state"]
    fresh = AnchorBank(3, size=2, dim=4)
    fresh.load_state_dict(bank.state_dict())
    assert torch.equal(fresh.entries, bank.entries) and torch.equal(fresh.filled, bank.filled)
    assert fresh.double().entries.dtype == torch.float64  # .to() / .double() move the queues too
    with pytest.raises(ValueError, match=r"the saved memory bank has shape \(3, 2, 4\), this loss's \(3, 5, 4\)"):
        AnchorBank(3, size=5, dim=4).load_state_dict(bank.state_dict())


def test_a_state_dict_is_a_snapshot_and_loading_one_copies_it():
    """Pushing after ``state_dict()`` leaves the taken state as it was, and a bank loaded from
    another's state never shares its queues (two losses would otherwise push into one bank)."""
    bank = AnchorBank(2, size=2, dim=3)
    bank.push(torch.ones(2, 3), torch.tensor([True, True]))
    state = bank.state_dict()
    other = AnchorBank(2, size=2, dim=3)
    other.load_state_dict(state)
    bank.push(torch.full((2, 3), 2.0), torch.tensor([True, True]))
    assert state["_extra_state"]["entries"][:, 1].abs().sum() == 0 and other.entries[:, 1].abs().sum() == 0
    assert bank.entries[:, 1].tolist() == [[2.0] * 3] * 2
