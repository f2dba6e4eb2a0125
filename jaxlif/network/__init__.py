"""Networks of conductance-LIF populations: building blocks (:mod:`.structure`), one step
(:mod:`.step`, which states the scheme and the delivery latency), spike delivery
(:mod:`.delivery`) and the simulator (:mod:`.simulate`)."""

from jaxlif.network import delivery, models, simulate, step, structure
from jaxlif.network.models import *  # noqa: F401,F403
from jaxlif.network.simulate import *  # noqa: F401,F403
from jaxlif.network.step import *  # noqa: F401,F403
from jaxlif.network.structure import *  # noqa: F401,F403

__all__ = list(structure.__all__) + list(step.__all__) + list(simulate.__all__) + list(models.__all__)
