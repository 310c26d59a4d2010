"""The recipe's lane that trains in this process takes the other lane's cores once that lane has ended."""

from __future__ import annotations

import torch

from lipsync_core.train.demo_recipe import TakeOverThreads


def test_take_over_threads_waits_for_the_other_lane_then_raises_the_thread_count():
    before = torch.get_num_threads()
    done = False
    try:
        torch.set_num_threads(1)
        hook = TakeOverThreads(lambda: done, 2)
        hook()
        assert torch.get_num_threads() == 1 and not hook.taken  # the other lane still trains
        done = True
        hook()
        assert torch.get_num_threads() == 2 and hook.taken
        torch.set_num_threads(1)
        hook()  # once only: a later thread change by the caller stands
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_take_over_threads_never_lowers_the_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        hook = TakeOverThreads(lambda: True, 1)
        hook()
        assert torch.get_num_threads() == 2 and hook.taken
    finally:
        torch.set_num_threads(before)
