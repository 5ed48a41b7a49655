set(Plugin-Name "Pixel statistics (a minimal CTK hosted application)")
set(Require-Plugin org.commontk.dah.hostedapp)
set(Plugin-ActivationPolicy "eager")
