
SatelliteDiskErase[ûÿÿÿÿÿÿÿÿ
sleep
seconds1e3*
tokenBucket
bucketa b
fatalyesPÿÿÿÿÿÿÿÿÿ