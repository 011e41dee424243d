"""Rows of a prompt set grouped for batched passes: a bad row keeps its error in its place,
rows group by their whole key, and no batch takes more tokens than allowed (but at least one row)."""
from analyses.core.errors import UserError
from analyses.kinds import row_batches


def test_a_row_that_cannot_be_read_keeps_its_error_and_the_others_are_read():
    def read(spec):
        if spec == "bad":
            raise UserError("answer: is two tokens")
        return (spec.upper(),)

    outcomes, found = row_batches.read_rows(["a", "bad", "c"], read)
    assert [type(o).__name__ for o in outcomes] == ["NoneType", "UserError", "NoneType"]
    assert found == {0: ("A",), 2: ("C",)}


def test_rows_group_by_their_whole_key_and_batches_respect_the_token_budget():
    keys = {0: (10, "x"), 1: (10, "x"), 2: (12, "x"), 3: (10, "y"), 4: (10, "x"), 5: (500, "x")}
    found = row_batches.batches(keys, max_tokens=20)
    assert found == [[0, 1], [4], [2], [3], [5]]  # 20 // 10 = 2 rows; 20 // 500 -> still one row
    assert sorted(i for batch in found for i in batch) == sorted(keys)
