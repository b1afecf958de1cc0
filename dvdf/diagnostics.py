"""Training statistics of the loop, summed on the device and read back once per evaluation.

Besides the means of the update's info tensors (losses, Q/V/advantage statistics) it keeps the
filter diagnostics none of the reference implementations report - what the filter kept:

* ``filter/kept_dyn_score``, ``filter/dropped_dyn_score``: mean dynamics score h of the kept and
  the dropped source rows; likewise ``filter/kept_advantage``, ``filter/dropped_advantage``;
* with provenance labels in the source data (which behaviour policy made each row):
  ``filter/kept_share/<policy>`` (share of the kept rows) and ``filter/keep_rate/<policy>``
  (share of that policy's rows kept).
"""

from __future__ import annotations

from typing import Optional

import torch


class TrainingStats:
    """Sums statistics on the device; one host transfer per :meth:`pop`.

    ``members=K``: every statistic has a leading K dimension and :meth:`pop` returns K dicts.
    """

    def __init__(self, labels: list[str], device: torch.device, members: Optional[int] = None):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.labels = labels              # provenance label -> behaviour-policy name
        self.num_labels = len(labels)
        self.lead = () if members is None else (members,)
        self.kept_by_label = torch.zeros(*self.lead, self.num_labels, device=device)
        self.seen_by_label = torch.zeros(*self.lead, self.num_labels, device=device)

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums[key] + value if key in self.sums else value.detach().clone()

    def add(self, info: dict[str, torch.Tensor], source_batch: Optional[dict[str, torch.Tensor]]) -> None:
        for key, value in info.items():
            if key != "kept_mask" and value.ndim == len(self.lead):
                self._add(key, value)
        kept = info.get("kept_mask")
        if kept is not None and source_batch is not None:
            kept = kept.float()
            dropped = 1 - kept
            score, adv = source_batch["dyn_score"], source_batch["advantage"]
            n_kept, n_drop = kept.sum(-1).clamp_min(1), dropped.sum(-1).clamp_min(1)
            self._add("filter/kept_dyn_score", (score * kept).sum(-1) / n_kept)
            self._add("filter/dropped_dyn_score", (score * dropped).sum(-1) / n_drop)
            self._add("filter/kept_advantage", (adv * kept).sum(-1) / n_kept)
            self._add("filter/dropped_advantage", (adv * dropped).sum(-1) / n_drop)
            if self.num_labels and "provenance" in source_batch:
                onehot = torch.nn.functional.one_hot(source_batch["provenance"], self.num_labels).float()
                self.kept_by_label += (kept.unsqueeze(-1) * onehot).sum(-2)
                self.seen_by_label += onehot.sum(-2)
        self.count += 1

    def pop(self) -> list[dict[str, float]]:
        """The means since the last pop, one dict per member (one dict for a single run)."""
        members = self.lead[0] if self.lead else 1
        if not self.sums:
            return [{} for _ in range(members)]
        keys = list(self.sums)
        table = (torch.stack([self.sums[k].float() for k in keys]) / max(self.count, 1)).reshape(len(keys), members)
        out = [dict(zip(keys, column)) for column in table.T.tolist()]
        if self.num_labels and self.seen_by_label.sum() > 0:  # no source batches (iql-target): no shares
            kept = self.kept_by_label.reshape(members, -1).tolist()
            seen = self.seen_by_label.reshape(members, -1).tolist()
            for member_out, member_kept, member_seen in zip(out, kept, seen):
                total_kept = max(sum(member_kept), 1e-9)
                for label, name in enumerate(self.labels):
                    member_out[f"filter/kept_share/{name}"] = member_kept[label] / total_kept
                    member_out[f"filter/keep_rate/{name}"] = member_kept[label] / max(member_seen[label], 1e-9)
            self.kept_by_label.zero_()
            self.seen_by_label.zero_()
        self.sums, self.count = {}, 0
        return out
