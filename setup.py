"""Packaging for yooptx, driven by settings.ini (nbdev 2 layout)."""
from configparser import ConfigParser
import setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, f"missing expected setting: {o}"
setup_cfg = {o: cfg[o] for o in cfg_keys}

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
lic = licenses[cfg['license'].lower()]
min_python = cfg['min_python']

requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
lab_requirements = ['jupyterlab>=4']
rl_requirements = ['stable-baselines3>=2.3', 'gymnasium>=0.29']   # yooptx[rl]: SAC agents and their environment
# yooptx[track]: MLflow tracking and registry on an embedded sqlite store; mlflow-skinny (~35 MB with SQLAlchemy and Alembic)
# instead of the full mlflow (~850 MB, UI included)
track_requirements = ['mlflow-skinny>=3.0', 'sqlalchemy>=2.0', 'alembic>=1.10']
ray_requirements = ['ray>=2.40']          # yooptx[ray]: trials as Ray tasks on a local Ray or a cluster (~240 MB)
sweep_requirements = ['optuna>=4.0']      # yooptx[sweep]: Optuna (TPE) sweeps with journal-file storage in the run folder

setuptools.setup(
    name=cfg['lib_name'],
    license='Apache-2.0',
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: 3.11'],
    url=cfg['git_url'],
    packages=setuptools.find_namespace_packages(include=['yooptx', 'yooptx.*']),
    include_package_data=True,
    package_data={'yooptx': ['configs/*.yaml']},
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'lab': lab_requirements, 'rl': rl_requirements, 'track': track_requirements,
                    'ray': ray_requirements, 'sweep': sweep_requirements},
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d'],
    },
    **setup_cfg)
