"""A block of text with a Copy button: the share link and the headless snippet.

Drawn by a small component (Streamlit's components v2, in the page itself) instead of
`st.code`, whose syntax highlighter is a 1.5 MB script: on a fresh browser, compiling it
delayed a cached link's first figure by about 0.3 s.
"""
from __future__ import annotations

import streamlit as st

_CSS = """
.workbench-copy { position: relative; margin: 0 0 1rem 0; }
.workbench-copy pre {
  margin: 0; padding: 0.75rem 5.5rem 0.75rem 1rem; border-radius: 0.5rem;
  background: var(--st-secondary-background-color, #f0f2f6); color: var(--st-text-color, #31333f);
  font-family: var(--st-code-font, "Source Code Pro", monospace); font-size: 0.85rem;
  white-space: pre-wrap; word-break: break-all;
}
.workbench-copy button {
  position: absolute; top: 0.4rem; right: 0.4rem; padding: 0.2rem 0.7rem; cursor: pointer;
  border: 1px solid rgba(49, 51, 63, 0.2); border-radius: 0.4rem; background: var(--st-background-color, white);
  color: var(--st-text-color, #31333f); font-size: 0.8rem;
}
"""

_JS = """
function copyText(text, pre) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  // plain http on another host: no clipboard API; select the text and copy it the old way
  const range = document.createRange();
  range.selectNodeContents(pre);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  document.execCommand("copy");
  return Promise.resolve();
}

export default function (component) {
  const { data, parentElement } = component;
  let box = parentElement.querySelector(".workbench-copy");
  if (!box) {
    box = document.createElement("div");
    box.className = "workbench-copy";
    box.innerHTML = '<pre></pre><button type="button">Copy</button>';
    parentElement.appendChild(box);
  }
  const pre = box.querySelector("pre"), button = box.querySelector("button");
  pre.textContent = data.text;
  button.setAttribute("aria-label", data.label);
  button.onclick = () => copyText(data.text, pre).then(
    () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); },
    () => { button.textContent = "Select and copy"; });
}
"""

_component = None


def copy_box(text: str, label: str, key: str) -> None:
    """`text` in a monospace block with a Copy button (`label` names it for screen readers)."""
    global _component
    if _component is None:
        _component = st.components.v2.component("workbench_copy", css=_CSS, js=_JS, isolate_styles=False)
    _component(key=key, data={"text": text, "label": label})
