
SatelliteDiskEraseerase satellite aab{

pre-checks/
validateDecom
siteaab
type	satellite:
tokenBucket
bucketdiskEraseSatellite
fataltrueñ
erase aab00-aab04*
	diskErase
machineaab00
siteaab*
	diskErase
machineaab01
siteaab*
	diskErase
machi