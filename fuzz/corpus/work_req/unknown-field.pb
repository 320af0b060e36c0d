˜*
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
machineaab02
siteaab*
	diskErase
machineaab03
siteaab*
	diskErase
machineaab04
siteaab 
pause
sleep
seconds1™
erase aab05-aab07*
	diskErase
machineaab05
siteaab*
	diskErase
machineaab06
siteaab*
	diskErase
machineaab07
siteaab