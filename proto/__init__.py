"""Kybernetes' wire types: the .proto sources and the stubs generated from them.

The generated modules (*_pb2.py, *_pb2_grpc.py, *.pyi) are committed; regenerate
them with `python -m kybernetes.proto.generate` after editing a .proto file. A test checks
that the committed stubs match the sources.
"""
