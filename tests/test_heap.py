"""utils.heap.settle_heap: what a live session and the server do before real time starts."""
import gc

from utils.heap import settle_heap


class _Node:
    def __init__(self):
        self.me = self          # a cycle: only the cycle collector can free it


def test_settle_heap_frees_garbage_and_takes_survivors_out_of_later_collections():
    kept = [_Node() for _ in range(1000)]
    garbage = [_Node() for _ in range(1000)]
    ids = {id(n) for n in garbage}
    del garbage
    before = len(gc.get_objects())
    settle_heap()
    walked = gc.get_objects()                       # what a later full collection walks
    assert not any(id(o) in ids and isinstance(o, _Node) for o in walked)    # the cycles were collected
    assert not any(o is kept[0] for o in walked)    # survivors are frozen: never walked again
    assert len(walked) < before - 1000
    fresh = _Node()
    assert any(o is fresh for o in gc.get_objects())     # new objects are collected as usual
    gc.unfreeze()
