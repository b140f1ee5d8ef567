"""The GAN nets (build.py builds a variant's G and D by `arch`), the toy ensembles, CycleGAN's pair
and the judge classifier. Nothing is imported here, so importing one net loads no other."""
