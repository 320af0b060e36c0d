
SatelliteDiskErase
sleep
seconds0.25PRrbt