
SatelliteDiskEraseerase aab00 with every fieldt
pre/
validateDecom
siteaab
type	satellite:
tokenBucket
bucketdiskEraseSatellite
fataltrueR
eraseE
	diskErasefirst
machineaab00
siteaabRZZÄ µÓ
PRr-1Z
teamsreZ
ticketOPS-1b4bf92f3577b34da6j	êÄ µÓ