"""Add a prompt set from the browser: a JSONL or CSV file, checked line by line (a bad line
is named and nothing is stored), kept in the store by content; its `sha256:` reference goes
into the form's "Prompt set" input, ready to Run."""
from __future__ import annotations

import streamlit as st

from analyses.core import datasets as ds
from analyses.core.errors import UserError
from app.components.display import md_escape


def stored_reference(data: bytes, name: str) -> str:
    """Check and store an uploaded set; its reference (raises a UserError naming the line)."""
    from analyses.runtime import datasets

    return datasets.add_bytes(data, name).reference


def upload_box(kind: str, dataset_key: str) -> None:
    """An expander with a file picker; a good file's reference fills `dataset_key`'s input."""
    with st.expander("Add a prompt set from a file (JSON lines or CSV)"):
        st.caption(md_escape(f"Rows with this page's inputs as keys or columns ({', '.join(ds.ROW_FIELDS)}); "
                             f"at most {ds.MAX_BYTES // 2**20} MiB and {ds.MAX_ROWS:,} rows."))
        upload = st.file_uploader("Prompt set file", type=["jsonl", "json", "csv"], key=f"{kind}:set_file",
                                  label_visibility="collapsed")
        if upload is None:
            return
        try:
            reference = stored_reference(upload.getvalue(), upload.name)
        except UserError as err:
            st.error(md_escape(str(err)), icon=":material/error:")
            return
        st.success(md_escape(f"Stored {upload.name} as {reference}: it is in the Prompt set input; press Run."),
                   icon=":material/check:")
        done = f"{kind}:set_file_used"
        if st.session_state.get(done) != upload.file_id:  # once per file: a later edit of the input stays
            st.session_state[done] = upload.file_id
            st.session_state[dataset_key] = reference  # the form below has not drawn its input yet
