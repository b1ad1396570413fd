"""Instance models: objects told apart, each with its mask, class and score.

    contract.py      what every instance model, its loss, inference and metrics share: the
                     (2, H, W) target, `Instances`, `classes_of`
    instancefcn.py   InstanceFCN (Dai et al., ECCV 2016): instance-sensitive score maps
      windows.py     its sliding windows: positives, sampling, the assembling module
      proposals.py   its inference: dense windows, mask NMS, pasting
    fcis.py          FCIS (Li et al., CVPR 2017): position-sensitive inside/outside maps per ROI
      fcis_targets.py  its training targets and losses: ROI labels, mask targets, OHEM
      rpn.py         its region proposal network: anchors, box coding, NMS, losses
      psroi.py       its ROI stages: position-sensitive pooling, detection, mask voting

Every model here is registered in fcnseg.models.INSTANCE_MODELS; its forward returns raw maps
(a dict of tensors) and its `postprocess` turns them into Instances without any parameter, so
that an exported network runs with the same post-processing (fcnseg.inference.instances).
"""

from fcnseg.models.instances.contract import Instances, classes_of

__all__ = ["Instances", "classes_of"]
