"""The warnings a page shows about where a result came from."""
from app.components.page import store_notices


def test_a_result_not_stored_and_one_made_with_other_versions_are_noticed():
    assert store_notices({"stored": True, "made_with_other_versions": []}) == []
    notices = store_notices({"stored": False, "store_problem": "IOException: disk full",
                             "made_with_other_versions": ["torch 1.0 (this server runs 2.0)"]})
    assert "not saved" in notices[0] and "disk full" in notices[0]
    assert notices[1] == "Made with torch 1.0 (this server runs 2.0)."
