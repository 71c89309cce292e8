from __future__ import annotations

from typing import Any

from django import forms

DENY_NEEDS_COMMENT = "Say why you deny it: the agent reads your comment and can act on it."


class DecisionForm(forms.Form):
    """The decision panel: one comment for either verdict, required to deny (the dashboard's
    rule; the REST API keeps its contract, docs/APPROVALS.md)."""

    comment = forms.CharField(required=False, max_length=2000, label="Comment to the agent",
                              widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, verdict: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verdict = verdict

    def clean_comment(self) -> str:
        comment = self.cleaned_data["comment"].strip()
        if self.verdict == "deny" and not comment:
            raise forms.ValidationError(DENY_NEEDS_COMMENT)
        return comment
