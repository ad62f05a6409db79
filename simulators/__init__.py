"""Stand-ins for the key-reader hardware: a seeded fleet of key sessions, fault injection
with ground truth, a serial key reader and an SLCAN USB-CAN adapter on pseudo-terminals
(``cbs-sim``). They use protocols/ and dbc/ to encode, and never import agent/.
"""
