"""The fault-space explorer (`drengine explore`): generated scenarios run through the real
engine on the simulators, invariants checked after every journal event and at the end,
minimal counterexamples written as replayable case files."""
