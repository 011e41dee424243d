"""token_texts: each id's text as decode_one gives it, looked up from a per-tokenizer cache
that grows for ids past the tokenizer (padded vocabularies), in the shape asked for."""
import numpy as np
import pytest

from analyses.kinds.tokens import decode_one, token_texts


def test_token_texts_are_decode_ones_in_the_shape_asked_for(embedded):
    tokenizer = embedded.bridge.tokenizer
    ids = np.array([[5, 17, 5], [len(tokenizer) - 1, 0, 301]])
    texts = token_texts(embedded.bridge, ids)
    assert texts.shape == (2, 3) and texts.dtype == object
    assert texts.ravel().tolist() == [decode_one(tokenizer, [i])[0] for i in ids.ravel().tolist()]
    assert token_texts(embedded.bridge, np.zeros((0, 4), dtype=np.int64)).shape == (0, 4)


def test_ids_past_the_tokenizer_are_decoded_and_the_ones_before_kept(embedded):
    tokenizer = embedded.bridge.tokenizer
    before = token_texts(embedded.bridge, [3, 4]).tolist()
    past = len(tokenizer) + 40  # a padded unembedding's extra rows
    texts = token_texts(embedded.bridge, [past, 3, 4])
    assert texts.tolist() == [decode_one(tokenizer, [past])[0], *before]


def test_a_negative_id_is_refused_by_value(embedded):
    with pytest.raises(ValueError, match="token ids must be 0 or more, got -1"):
        token_texts(embedded.bridge, [3, -1])
