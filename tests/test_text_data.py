import numpy as np
import pytest

from rnnlab.data.text import StreamBatcher, Vocab, builtin_corpus, eval_chunks, read_text, split_train_val
from rnnlab.errors import UserError


def test_builtin_corpus_is_large_text():
    text = builtin_corpus()
    assert len(text) > 100_000
    assert read_text(None) == text


def test_vocab_round_trip_and_unknown_characters():
    v = Vocab.from_text("hello world")
    assert v.chars == " dehlorw"
    assert v.decode(v.encode("world")) == "world"
    with pytest.raises(UserError, match="'z'"):
        v.encode("lazy", "--prime text")
    ids, dropped = v.encode_known("lazy")
    assert dropped == 3 and v.decode(ids) == "l"


def test_split_is_chronological():
    train, val = split_train_val("abcdefghij", 0.1)
    assert (train, val) == ("abcdefghi", "j")


def test_streams_are_contiguous_and_reset_at_each_pass():
    ids = np.arange(103)
    b = StreamBatcher(ids, batch_size=2, seq_len=10)  # streams of 51: 0..50 and 51..101
    x1, y1, r1 = b.next()
    x2, y2, r2 = b.next()
    assert r1 and not r2
    np.testing.assert_array_equal(x1[:, 1:], y1[:, :-1])
    np.testing.assert_array_equal(x2[:, 0], y1[:, -1])  # the next batch continues each stream
    np.testing.assert_array_equal(x1[:, 0], [0, 51])
    for _ in range(3):
        b.next()
    x6, _, r6 = b.next()  # 5 batches of 10 use 50 inputs per stream; the 6th starts a new pass
    assert r6 and b.passes == 1
    np.testing.assert_array_equal(x6[:, 0], [0, 51])


def test_stream_batcher_needs_enough_text():
    with pytest.raises(UserError, match="lower --batch-size"):
        StreamBatcher(np.arange(50), batch_size=8, seq_len=10)


def test_eval_chunks_cover_each_target_once():
    ids = np.arange(1000)
    targets = np.concatenate(
        [t.reshape(-1) for t in (np.concatenate(list(c[1] for c in eval_chunks(ids, 4, 7)), axis=1),)]
    )
    assert len(np.unique(targets)) == targets.size
    assert targets.size >= 1000 - 5


def test_eval_chunks_read_the_ids_a_chunk_at_a_time():
    """The validation part of a prepared corpus is a memory map that may not fit in memory."""

    class Recording:
        def __init__(self, ids):
            self.ids, self.longest = ids, 0

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, where):
            piece = self.ids[where]
            self.longest = max(self.longest, len(piece))
            return piece

    ids = np.arange(5000) % 97
    recorded = Recording(ids)
    got = list(eval_chunks(recorded, 4, 7))
    want = list(eval_chunks(ids, 4, 7))
    assert recorded.longest <= 8  # one chunk of a stream and its trailing target
    for (gi, gt), (wi, wt) in zip(got, want, strict=True):
        assert np.array_equal(gi, wi) and np.array_equal(gt, wt)
    assert [c[1][0, 0] for c in want[:2]] == [ids[1], ids[8]]  # stream 0 reads the text in order


@pytest.mark.parametrize(
    "content,match", [(b"", "empty"), (b"ab\x00cd", "binary"), (b"caf\xe9 au lait", "not valid UTF-8")]
)
def test_bad_text_files(tmp_path, content, match):
    p = tmp_path / "t.txt"
    p.write_bytes(content)
    with pytest.raises(UserError, match=match):
        read_text(p)


def test_missing_text_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_text(tmp_path / "nope.txt")
