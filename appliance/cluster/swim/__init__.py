"""Membership gossip: SWIM + Lifeguard on HashiCorp memberlist's unencrypted wire format.

A stock ``serf agent`` can join a cluster of these nodes and judge them.  One file per
concern (memberlist's split, without the god object):

========================  ==============================================================
``codec``                 bytes <-> messages: type bytes, msgpack dialect, compound, CRC,
                          LZW, stream framing.  The only place the wire format lives.
``serf``                  Serf's layer: tags in meta, join/leave intents, Lamport clock.
``state``                 the member table; every member state change happens here.
``suspicion``             Lifeguard's dynamic suspicion timeout (pure).
``awareness``             Lifeguard's local health score (pure).
``broadcast``             transmit-limited, invalidating gossip queue (pure).
``config``                ``SwimConfig`` and memberlist's ``lan()``/``wan()``/``local()``.
``node``                  the sans-IO core: events in, actions out, no clock of its own.
``transport``             the trio shell: UDP + TCP sockets, ``run(config, task_status)``.
``sim``                   SimCluster: many cores on an in-memory network and a fake clock.
========================  ==============================================================

Only ``transport`` does I/O; tests/cluster/test_layering.py keeps it that way.
"""
