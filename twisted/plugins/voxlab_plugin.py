"""twistd plugin: ``twistd -n voxlab``."""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class VoxlabServiceMaker:
    """Makes the voxlab service from its command-line options."""

    tapname = "voxlab"
    description = "voxlab telephony server and lab (SIP/RTP, Python scenarios, live console)"

    @property
    def options(self):
        from voxlab.options import Options
        return Options

    def makeService(self, options):
        from voxlab.service import VoxlabService
        return VoxlabService(options.config)


serviceMaker = VoxlabServiceMaker()
