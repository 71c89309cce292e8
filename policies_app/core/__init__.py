"""The decision core: what every governed operation goes through, with no Django and no
transport in it. The operation's context (`context`), the frozen snapshot types (`snapshot`),
the ordered stage list (`stages`), the pure policy (`rules`), domain packs (`packs`), the
pinning scan (`pinning`) and velocity logic (`velocity`), and the ports its I/O comes in
through (`ports`). The Django side of policies_app builds snapshots and wires the ports."""
